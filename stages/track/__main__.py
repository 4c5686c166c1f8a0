from stages import runtime
from stages.track.process import main

runtime.run(main)
