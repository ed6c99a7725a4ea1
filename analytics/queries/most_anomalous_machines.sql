-- The most anomalous machines in the last 7 days.
--
-- The window is the 7 days up to the newest reading in the archive (on a live
-- system: up to now). Machines are ranked by the summed score (0..1 each) of
-- their machine-health and environment anomaly episodes. Episodes inside a
-- planned maintenance window (events with planned = true) are expected and
-- are counted apart; sensor faults point at a sensor, not the machine, and are
-- counted apart too. Top 10. (A machine's planned maintenance windows do not
-- overlap, so the join tags each episode at most once.)
WITH bounds AS (
    SELECT max(ts) AS window_end, max(ts) - INTERVAL '7 days' AS window_start
    FROM readings
),
maintenance AS (
    SELECT machine_id, downtime_start, repair_end
    FROM events
    WHERE planned AND downtime_start IS NOT NULL
),
recent AS (
    SELECT
        a.machine_id,
        a.kind,
        a.score,
        a.detector,
        a.ts,
        w.machine_id IS NOT NULL AS in_maintenance
    FROM anomalies a
    CROSS JOIN bounds b
    LEFT JOIN maintenance w
      ON w.machine_id = a.machine_id AND a.ts >= w.downtime_start AND a.ts <= w.repair_end
    WHERE a.ts > b.window_start AND a.ts <= b.window_end
)
SELECT
    r.machine_id,
    m.site,
    m.manufacturer,
    m.model,
    count(*) FILTER (WHERE r.kind <> 'sensor_fault' AND NOT r.in_maintenance) AS episodes,
    round(coalesce(sum(r.score) FILTER (WHERE r.kind <> 'sensor_fault' AND NOT r.in_maintenance), 0), 3) AS total_score,
    round(coalesce(max(r.score) FILTER (WHERE r.kind <> 'sensor_fault' AND NOT r.in_maintenance), 0), 3) AS max_score,
    count(DISTINCT r.detector) FILTER (WHERE r.kind <> 'sensor_fault' AND NOT r.in_maintenance) AS detectors,
    count(*) FILTER (WHERE r.kind = 'sensor_fault') AS sensor_faults,
    count(*) FILTER (WHERE r.kind <> 'sensor_fault' AND r.in_maintenance) AS during_maintenance,
    max(r.ts) AS last_seen
FROM recent r
LEFT JOIN machines m ON m.machine_id = r.machine_id
GROUP BY r.machine_id, m.site, m.manufacturer, m.model
ORDER BY total_score DESC, episodes DESC, r.machine_id
LIMIT 10;
