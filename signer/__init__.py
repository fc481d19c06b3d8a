"""The signer: the only process that touches the CA keys on the PKCS#11 token."""
