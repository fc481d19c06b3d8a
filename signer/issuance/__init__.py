"""Certificate, CRL and OCSP construction under profiles the signer enforces itself."""
