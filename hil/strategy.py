"""The strategy: the one place a board changes state (labgrid's strategies).

    off -> flashed -> deployed -> provisioned -> booted -> linked

Each step is a callable the board kind provides (steps[state]); `transition(target)` runs
the steps between the current state and the target in order, once. A step that fails
leaves the strategy in the last state reached, with the error as one line, so a rerun
resumes there. `cut_power()` (or a reset) drops a linked board back to "provisioned":
flash survives, the link does not.
"""

STATES = ("off", "flashed", "deployed", "provisioned", "booted", "linked")


class StrategyError(RuntimeError):
    """A board could not reach a state; one line naming the step."""


class Strategy:
    def __init__(self, steps, state="off"):
        unknown = set(steps) - set(STATES[1:])
        if unknown:
            raise ValueError("unknown strategy steps %s" % sorted(unknown))
        if state not in STATES:
            raise ValueError("unknown state %r" % state)
        self.steps = steps
        self.state = state
        self.history = []

    def transition(self, target):
        if target not in STATES:
            raise StrategyError("unknown target state %r (one of %s)" % (target, ", ".join(STATES)))
        have, want = STATES.index(self.state), STATES.index(target)
        for state in STATES[have + 1:want + 1]:
            step = self.steps.get(state)
            try:
                if step is not None:
                    step()
            except Exception as e:  # noqa: BLE001 - reported as one line, state kept
                raise StrategyError("%s -> %s failed: %s" % (self.state, state,
                                                            " ".join(str(e).split()))) from e
            self.history.append(state)
            self.state = state
        return self.state

    def fall_back(self, state):
        """The board lost state outside the strategy (a power cut): note where it is now."""
        if STATES.index(state) < STATES.index(self.state):
            self.state = state
