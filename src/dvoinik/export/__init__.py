"""The export stage: a checkpoint → a clean Hugging Face folder, a GGUF file, a model card and notes for local runners."""
