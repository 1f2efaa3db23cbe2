"""The process shell: the agent's command line and main loop, stdout and the journal, its
threads (the output writer, the persistence inventory), /proc and the start-up self-test."""
