// VeilConfig
