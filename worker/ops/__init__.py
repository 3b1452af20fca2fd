"""Operations: the embedded stack, logging, health and metrics."""
