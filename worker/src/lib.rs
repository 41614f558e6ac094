//! Background work: the durable job queue (claimed from the database with
//! leases, retried with backoff, dead-lettered) and the jobs that run on it
//! (delivery, DNS checks, scrub and repair of shards, billing sync). Empty
//! until the outbound-mail issue builds the queue; nothing here pretends yet.
