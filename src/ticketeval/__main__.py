from ticketeval.cli.app import app

# Guarded: Dask's spawned worker processes import __main__ again.
if __name__ == "__main__":
    app(prog_name="ticketeval")
