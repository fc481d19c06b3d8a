"""The one adapter to PKCS#11: nothing outside this package (and hsm_config) imports pkcs11."""
