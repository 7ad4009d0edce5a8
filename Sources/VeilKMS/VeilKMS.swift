// VeilKMS
