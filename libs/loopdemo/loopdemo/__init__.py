"""The demo of the closed loop: demo tools and tasks with known correct calls, and the loop driver."""
