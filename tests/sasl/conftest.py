import sys
from pathlib import Path

# msk_iam_reference.py sits beside the tests as a plain module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
