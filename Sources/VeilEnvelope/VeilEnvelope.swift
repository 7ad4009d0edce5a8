// VeilEnvelope
