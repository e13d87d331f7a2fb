"""Reports: program analytics and the leaderboard."""
