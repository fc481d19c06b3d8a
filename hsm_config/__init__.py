"""hsm_config package."""
