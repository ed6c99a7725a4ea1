-- Monthly uptime per machine, from the events table.
--
-- A machine is down from an event's `downtime_start` to its `repair_end`.
-- Each month counts only the days the archive covers (a partial first or last
-- month is not padded), and downtime is clipped to the month it falls in. The
-- days come from `archive_partitions` (one row per archive partition holding
-- data), not from a scan of every reading.
-- `uptime_pct` leaves planned maintenance out (as service contracts do);
-- `availability_pct` counts every hour the machine could not scan.
WITH days AS (
    SELECT DISTINCT date FROM archive_partitions
),
periods AS (
    SELECT
        substr(date, 1, 7) AS month,
        date_part('epoch', CAST(min(date) AS DATE)) AS period_start,
        date_part('epoch', CAST(max(date) AS DATE)) + 86400 AS period_end
    FROM days
    GROUP BY substr(date, 1, 7)
),
downtime AS (
    SELECT
        e.machine_id,
        p.month,
        e.planned,
        greatest(
            0.0,
            least(date_part('epoch', e.repair_end), p.period_end)
                - greatest(date_part('epoch', e.downtime_start), p.period_start)
        ) / 3600.0 AS hours
    FROM events e
    JOIN periods p
      ON date_part('epoch', e.downtime_start) < p.period_end
     AND date_part('epoch', e.repair_end) > p.period_start
    WHERE e.downtime_start IS NOT NULL
)
SELECT
    m.machine_id,
    p.month,
    round((p.period_end - p.period_start) / 3600.0, 1) AS hours,
    round(coalesce(sum(d.hours) FILTER (WHERE NOT d.planned), 0), 2) AS unplanned_downtime_h,
    round(coalesce(sum(d.hours) FILTER (WHERE d.planned), 0), 2) AS planned_downtime_h,
    round(100.0 * (1 - coalesce(sum(d.hours) FILTER (WHERE NOT d.planned), 0) * 3600.0 / (p.period_end - p.period_start)), 3) AS uptime_pct,
    round(100.0 * (1 - coalesce(sum(d.hours), 0) * 3600.0 / (p.period_end - p.period_start)), 3) AS availability_pct
FROM machines m
CROSS JOIN periods p
LEFT JOIN downtime d ON d.machine_id = m.machine_id AND d.month = p.month
GROUP BY m.machine_id, p.month, p.period_start, p.period_end
ORDER BY m.machine_id, p.month;
