"""What every service of the pipeline does the same way: the ledger, the temporary store, the
SQS consumer policy (dead-letter with a reason, back off, account for each record), and
settings from the environment. Adapters over boto3 clients passed in; no service logic."""
