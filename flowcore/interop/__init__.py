"""Other libraries' models and checkpoints in flowcore, and flowcore models in theirs."""
