-- Daily statistics per machine and channel.
--
-- One row per UTC day, machine and channel: how many readings arrived, and
-- their minimum, mean, maximum and (sample) standard deviation. `date` and
-- `stream` are partition columns: add `WHERE date >= '2025-03-01'` or
-- `AND stream = 'temperature'` and only those directories are read.
-- A day with fewer readings than its neighbours points at a dropout.
SELECT
    date,
    machine_id,
    stream,
    channel,
    count(*) AS readings,
    min(value) AS min_value,
    avg(value) AS mean_value,
    max(value) AS max_value,
    stddev(value) AS stddev_value
FROM readings
GROUP BY date, machine_id, stream, channel
ORDER BY date, machine_id, channel;
