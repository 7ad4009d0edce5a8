// VeilCompression
