"""Files and the command line: reading captures, flow files and HAR
(``sources``), the offline report, redaction of saved flows, and the live
replay server, with the ``ssemedic`` command that serves them."""
