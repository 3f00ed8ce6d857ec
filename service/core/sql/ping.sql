-- ping: a cheap round trip (the maintenance leader proves its lock connection is alive).
SELECT 1;
