-- Speech rendered from text (service/store/speech.py): one row per rendering.

-- name: keep!
-- Recorded by every message that speaks it; the first one inserts.
INSERT INTO speech_renders (stem, language, engine, duration_ms)
VALUES (:stem, :language, :engine, :duration_ms)
ON CONFLICT (stem) DO NOTHING;
