"""A scripted maze navigator, as D4RL's maze2d ``WaypointController``.

Breadth-first search over the free cells of the maze map gives, for every goal cell, the next
cell to head for from any cell; a PD law drives toward that cell's centre,
``a = clip(kp * (target - pos) - kd * vel, -1, 1)``, and toward the exact goal point in the
goal cell. Tables are precomputed once, so a step costs a dictionary look-up.
"""

from __future__ import annotations

from collections import deque

import numpy as np

Cell = tuple[int, int]


def free_cells(maze_map: list[list[int | str]]) -> list[Cell]:
    """Cells that are not walls (value 1), in row-major order."""
    return [(row, col) for row, cells in enumerate(maze_map) for col, v in enumerate(cells) if v != 1 and v != "1"]


def next_hop_table(maze_map: list[list[int | str]]) -> dict[Cell, dict[Cell, Cell]]:
    """``table[goal][cell]`` = the neighbour of ``cell`` on a shortest path to ``goal``."""
    free = set(free_cells(maze_map))
    table: dict[Cell, dict[Cell, Cell]] = {}
    for goal in free:
        hops: dict[Cell, Cell] = {goal: goal}
        queue = deque([goal])
        while queue:
            cur = queue.popleft()
            row, col = cur
            for nb in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
                if nb in free and nb not in hops:
                    hops[nb] = cur  # from nb, step toward cur (one step closer to goal)
                    queue.append(nb)
        table[goal] = hops
    return table


class WaypointController:
    """PD controller following BFS waypoints to a goal cell of a maze."""

    def __init__(self, maze, kp: float = 10.0, kd: float = 1.0):  # maze: gymnasium_robotics Maze
        self.maze = maze
        self.kp = kp
        self.kd = kd
        self.table = next_hop_table(maze.maze_map)

    def cell_of(self, xy: np.ndarray) -> Cell:
        row, col = self.maze.cell_xy_to_rowcol(np.asarray(xy))
        return int(row), int(col)

    def action(self, pos: np.ndarray, vel: np.ndarray, goal_cell: Cell, goal_xy: np.ndarray) -> np.ndarray:
        """Action that moves from ``pos`` toward ``goal_xy`` inside ``goal_cell``."""
        cell = self.cell_of(pos)
        hops = self.table[goal_cell]
        if cell == goal_cell or cell not in hops:
            target = goal_xy
        else:
            target = self.maze.cell_rowcol_to_xy(np.asarray(hops[cell]))
        return np.clip(self.kp * (target - pos) - self.kd * vel, -1.0, 1.0)
