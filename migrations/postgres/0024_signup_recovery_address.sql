-- A recovery address given at signup waits in line with the signup and
-- goes to the account when it opens.
ALTER TABLE waiting_line ADD COLUMN recovery_address TEXT;
