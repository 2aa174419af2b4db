"""`python -m release.devtools.simulator`: the simulator command without loading the service.

`flask --app app simulator` builds the app first, and the app needs a config; before an
operator has written one, this entry runs the same command (reading a config only for links).
"""

from release.devtools.simulator.command import simulator_command

if __name__ == "__main__":
    simulator_command(prog_name="python -m release.devtools.simulator")
