-- Per-token IP allowlists (README.md, "IP allowlists"): NULL allows any
-- address; otherwise the networks, canonical CIDRs separated by spaces.
ALTER TABLE api_tokens ADD COLUMN allowed_ips TEXT;
