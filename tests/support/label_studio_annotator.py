"""What people do in Label Studio, through its official SDK (label-studio-sdk), for
tests/test_review_label_studio.py. Runs in .venv-review (the SDK is not in the project's venv).

    python label_studio_annotator.py URL create-project TITLE CONFIG_FILE  -> prints the project id
    python label_studio_annotator.py URL annotate PROJECT ANSWERS_JSON      ({video_uri: class name})
    python label_studio_annotator.py URL export PROJECT DEST                (the JSON export)

The API key is read from LABEL_STUDIO_API_KEY, never from the command line.
"""
import json
import os
import sys

from label_studio_sdk import LabelStudio


def main(url: str, command: str, *args: str) -> None:
    ls = LabelStudio(base_url=url, api_key=os.environ["LABEL_STUDIO_API_KEY"])
    if command == "create-project":
        title, config = args
        with open(config) as f:
            print(ls.projects.create(title=title, label_config=f.read()).id)
    elif command == "annotate":
        project, answers = int(args[0]), json.loads(args[1])
        done = 0
        for task in ls.tasks.list(project=project):
            label = answers.get(task.data["video_uri"])
            if label is None:
                continue  # left for later: the export has the task without an answer
            # As the annotator submits it in the UI: the Choices tag's answer on the video.
            ls.annotations.create(id=task.id, was_cancelled=False, result=[
                {"from_name": "label", "to_name": "video", "type": "choices", "value": {"choices": [label]}}])
            done += 1
        print(done)
    elif command == "export":
        project, dest = int(args[0]), args[1]
        data = b"".join(ls.projects.exports.download_sync(id=project, export_type="JSON", download_all_tasks=True))
        with open(dest, "wb") as f:
            f.write(data)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
