"""How the server does its work: endpoints in worker threads, a bounded number of inferences per device, and a
shutdown that leaves no child process behind."""
