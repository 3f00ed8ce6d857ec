"""Maintenance, done by one process of the fleet at a time: the leader (leader.py) holds
the maintenance lock; the rescuer, pruner, scheduler and artifact sweeper each work only
while their process leads. Every one is a supervised component: one that keeps failing
stops its process, whose lock (and so the leadership) then moves to another."""
