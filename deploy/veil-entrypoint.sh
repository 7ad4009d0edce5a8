#!/bin/sh
# Starts `veil run` as PID 1's replacement, so SIGTERM (ECS stop) and SIGHUP reach Veil.
#
# The configuration comes from, first found:
#   VEIL_CONFIG       the YAML text itself (how the CloudFormation template passes it);
#   VEIL_CONFIG_FILE  a path (a mounted file or volume); default /etc/veil/veil.yaml.
# ${NAME} references inside the YAML are replaced by Veil from the environment, so secrets
# can come from the task definition's `secrets` without being written into VEIL_CONFIG.
set -eu
if [ -n "${VEIL_CONFIG:-}" ]; then
  dir="${TMPDIR:-/tmp}/veil"
  mkdir -p "$dir"
  umask 077
  printf '%s\n' "$VEIL_CONFIG" > "$dir/veil.yaml"
  exec /usr/local/bin/veil run --config "$dir/veil.yaml" "$@"
fi
exec /usr/local/bin/veil run --config "${VEIL_CONFIG_FILE:-/etc/veil/veil.yaml}" "$@"
