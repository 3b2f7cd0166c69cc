"""Responses of the Responses API on the run engine: a response is a job of the same work queue as a run
(engine/claims.py), executed by the same turn loop (engine/runner.py `TurnLoop`), which writes through the
response's tape (tape.py) as items and stream events instead of steps and messages."""
