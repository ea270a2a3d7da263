"""Internal plumbing every service shares (it imports nothing else of ours): how services sign their requests."""
