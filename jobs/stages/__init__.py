"""The per-video stages of the Ray pipeline, in the order the data flows.

    items.to_work_items     plan rows -> work items (the stage contract: jobs.stages.items.ITEM)
    windows.expand_windows  --window-seconds only: a work item per window (CPU task)
    decode.decode_videos    work items -> sampled uint8 clips + what the decoder saw (CPU task)
    label.Labeler           clips -> label rows in the output schema (an actor holding the model)

Stateless stages are plain functions, the stateful one a small class (Ray Data's batch
inference pattern). Each gets what it needs in its input batch, never by reaching back.
"""
