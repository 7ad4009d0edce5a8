// VeilWire
