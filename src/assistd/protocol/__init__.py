"""Wire models mirroring the OpenAI schema, one module per resource. No database imports here."""
