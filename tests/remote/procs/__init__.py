"""Child scripts and helpers of the remote-mode load and failure tests (``remote.procs``)."""
