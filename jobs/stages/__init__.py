"""The per-video stages of the Ray pipeline, in the order the data flows.

    records.to_work_items   plan rows -> work items (records.py: the Arrow schema of every batch)
    windows.expand_windows  --window-seconds only: a work item per window (CPU task)
    decode.decode_videos    work items -> sampled uint8 clips + what the decoder saw (CPU task)
    label.Labeler           clips -> label rows in the output schema + FACTS (an actor holding the model)

Stateless stages are plain functions, the stateful one a small class (Ray Data's batch
inference pattern). Each gets what it needs in its input batch, never by reaching back.
The bodies take Arrow and give Arrow and never import Ray: jobs/ray_stages.py wraps them, and
jobs/stage_list.py declares each as one ``Stage`` (kind, schemas, parameters) for the pipeline.
"""
