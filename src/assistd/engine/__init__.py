"""The run engine: claims runs, builds prompts, calls the model, records steps, publishes events."""
