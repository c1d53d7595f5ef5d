"""A stand-in for `gcloud` (the Google Cloud SDK cannot be reached from here) over a JSON state file
($FAKE_GCLOUD_STATE): the Vertex AI models and endpoints, the bucket's objects and the images that the
deploy's commands touch. It prints what the real gcloud prints where the deploy reads it: stdout only
for `--format=value(...)`, a line a resource, fields joined by a tab and a list's items by ';' (the
SDK's ValuePrinter, googlecloudsdk/core/resource/csv_printer.py); progress and errors on stderr as
`ERROR: (gcloud.GROUP.COMMAND) ...`, exit 1. `"fail": ["ai endpoints create"]` in the state makes a
command fail as a quota or permission error would. Every call is appended to the state's "calls".
"""

import json
import os
import re
import sys

STATE = os.environ["FAKE_GCLOUD_STATE"]


def flag(args, name):
    """The value of --name=V or --name V."""
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
    return None


def value(resource, key):
    """One field of the value() projection: a plain key, or NAME[].KEY over a list."""
    if "[]." in key:
        items, sub = key.split("[].")
        listed = resource.get(items) or []
        return ";".join(str(item.get(sub, "")) for item in listed)
    found = resource.get(key)
    return "" if found is None else str(found)


def show(resources, fmt):
    keys = re.fullmatch(r"value\((.*)\)", fmt).group(1).split(",")
    for resource in resources:
        print("\t".join(value(resource, k.strip()) for k in keys))


def error(command, message):
    print(f"ERROR: (gcloud.{'.'.join(command)}) {message}", file=sys.stderr)
    return 1


def main(args):
    with open(STATE) as f:
        state = json.load(f)
    state["calls"].append(args)
    words = [a for a in args if not a.startswith("-")]
    try:
        return run(state, args, words)
    finally:
        with open(STATE, "w") as f:
            json.dump(state, f)


def run(state, args, words):
    command = words[:3] if words[0] == "ai" else words[:2] if words[0] in ("storage", "builds") else words[:4]
    said = " ".join(command)
    if said in state.get("fail", []):
        return error(command, f"PERMISSION_DENIED: the caller may not {said} (a failure the test asked for)")
    project, region = flag(args, "project"), flag(args, "region")
    where = f"projects/{project}/locations/{region}"
    if words[0] == "ai":
        print(f"Using endpoint [https://{region}-aiplatform.googleapis.com/]", file=sys.stderr)
        kind = words[1]
        if words[2] == "list":
            wanted = flag(args, "filter").split("=", 1)[1]
            found = [r for r in state[kind] if r["displayName"] == wanted]
            if not found:
                print("Listed 0 items.", file=sys.stderr)
            show(found, flag(args, "format"))
            return 0
        if words[2] in ("upload", "create"):
            state["next_id"] += 1
            made = {"name": f"{where}/{kind}/{state['next_id']}", "displayName": flag(args, "display-name")}
            if kind == "endpoints":
                made["deployedModels"] = []
            state[kind].append(made)
            print(f"Waiting for operation [{state['next_id'] + 1000}]...done.", file=sys.stderr)
            return 0
        target = next((r for r in state[kind] if r["name"].rsplit("/", 1)[-1] == words[3]), None)
        if target is None:
            return error(command, f"NOT_FOUND: {where}/{kind}/{words[3]} not found")
        if words[2] == "describe":
            show([target], flag(args, "format"))
        elif words[2] == "deploy-model":
            state["next_id"] += 1
            target["deployedModels"].append({"id": str(state["next_id"]), "model": f"{where}/models/{flag(args, 'model')}"})
            print(f"Deployed a model to the endpoint {words[3]}. Id of the deployed model: {state['next_id']}.",
                  file=sys.stderr)
        elif words[2] == "undeploy-model":
            target["deployedModels"] = [d for d in target["deployedModels"] if d["id"] != flag(args, "deployed-model-id")]
        elif words[2] == "delete":
            if target.get("deployedModels"):
                return error(command, "FAILED_PRECONDITION: the endpoint has deployed models")
            state[kind].remove(target)
        return 0
    if words[:2] == ["storage", "cp"]:
        state["objects"].append(words[-1].rstrip("/") + "/saved_model.pb")
        return 0
    if words[:2] == ["storage", "rm"]:
        prefix = words[-1].rstrip("/") + "/"
        gone = [o for o in state["objects"] if o.startswith(prefix)]
        if not gone:
            return error(command, f"The following URLs matched no objects or files:\n-{words[-1]}")
        state["objects"] = [o for o in state["objects"] if o not in gone]
        return 0
    if words[:2] == ["builds", "submit"]:
        state["images"].append(flag(args, "tag"))
        return 0
    if words[:4] == ["artifacts", "docker", "images", "delete"]:
        if words[4] not in state["images"]:
            return error(command, "NOT_FOUND: Requested entity was not found.")
        state["images"].remove(words[4])
        return 0
    return error(command, f"unexpected call: gcloud {' '.join(args)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
