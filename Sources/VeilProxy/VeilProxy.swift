// VeilProxy
