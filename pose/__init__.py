"""Pure pose maths and data: skeletons, joint angles, cameras. No sockets, no models."""
