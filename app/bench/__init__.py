"""`voicefleet bench`: load figures for a unit (LLM streaming, voice turns), as a command."""
