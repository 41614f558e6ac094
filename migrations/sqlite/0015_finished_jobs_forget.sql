-- A finished job keeps no payload: those written before held reset links
-- (`mail.system`) among others.
UPDATE jobs SET payload = '{}' WHERE state IN ('done', 'dead');
