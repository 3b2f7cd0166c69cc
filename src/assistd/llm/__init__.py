"""Language model backends: the LLMBackend protocol, llama.cpp, and a scripted fake for unit tests."""
