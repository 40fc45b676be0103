# vigil: runs before main.py. Kept empty on purpose: a failure here cannot stop the
# firmware from starting, and the hardware is built in main.py.
