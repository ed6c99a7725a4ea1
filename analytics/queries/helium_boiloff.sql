-- Helium boil-off rate per machine.
--
-- From the daily mean of `helium_level_pct` (% of the vessel's nominal fill):
-- the day-over-day change, with refills (a rise of more than 1 point in a
-- day) left out, averaged over the days the machine reported. A zero-boil-off
-- magnet with a healthy cold head loses close to nothing; a failing cold head
-- or a leak shows up as a rate many times the fleet's. `days_to_40_pct` is
-- how long the newest level lasts at that rate before the low-helium limit
-- (40 %, the catalogue's alarm) — empty when the level is not falling.
WITH daily AS (
    SELECT machine_id, date, avg(value) AS level
    FROM readings
    WHERE stream = 'temperature' AND channel = 'helium_level_pct'
    GROUP BY machine_id, date
),
changes AS (
    SELECT
        machine_id,
        date,
        level,
        level - lag(level) OVER (PARTITION BY machine_id ORDER BY date) AS change,
        row_number() OVER (PARTITION BY machine_id ORDER BY date DESC) AS newest
    FROM daily
),
rates AS (
    SELECT
        machine_id,
        count(change) FILTER (WHERE change <= 1.0) AS days,
        count(*) FILTER (WHERE change > 1.0) AS refills,
        -avg(change) FILTER (WHERE change <= 1.0) AS boiloff_pct_per_day,
        max(level) FILTER (WHERE newest = 1) AS latest_level_pct
    FROM changes
    GROUP BY machine_id
)
SELECT
    machine_id,
    days,
    refills,
    round(boiloff_pct_per_day, 4) AS boiloff_pct_per_day,
    round(latest_level_pct, 2) AS latest_level_pct,
    CASE WHEN boiloff_pct_per_day > 0
         THEN round((latest_level_pct - 40.0) / boiloff_pct_per_day, 1)
    END AS days_to_40_pct
FROM rates
ORDER BY boiloff_pct_per_day DESC, machine_id;
