"""A Ray `worker_process_setup_hook` for tests: every worker process of the job records each call of
`videomaker.training`'s step functions (and what they returned) to the file `$VIDEOMAKER_STEP_SPY`."""

import json
import os

SPY_FILE_ENV = "VIDEOMAKER_STEP_SPY"


def install() -> None:
    from videomaker import training

    path = os.environ[SPY_FILE_ENV]

    def record(name: str, value: float) -> None:
        with open(path, "a") as stream:
            stream.write(json.dumps({"call": name, "value": value, "pid": os.getpid()}) + "\n")

    micro_step, optimizer_step = training.micro_step, training.optimizer_step

    def spied_micro_step(*args, **kwargs):
        out = micro_step(*args, **kwargs)
        record("micro_step", out.girl.loss.item())
        return out

    def spied_optimizer_step(*args, **kwargs):
        grad_norm = optimizer_step(*args, **kwargs)
        record("optimizer_step", grad_norm)
        return grad_norm

    training.micro_step, training.optimizer_step = spied_micro_step, spied_optimizer_step
