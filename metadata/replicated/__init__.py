"""The Index over three replicas, leaderless: quorum writes and reads, merged scans."""
