"""What the tests share besides fixtures: `helpers` (running the command line, files, processes,
the one-error-line check), the real servers the tests start on 127.0.0.1 (`loopback` HTTP,
the Saturn/Prefect Cloud `emulator`, `postgres`, headless Chromium in `browser`), and the real
UCI file parsed once per test process (`realdata`)."""
