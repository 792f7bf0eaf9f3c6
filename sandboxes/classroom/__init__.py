"""Classroom: templates, courses with invite links, a teacher's view,
workspace reset and starter-code updates, sharing, and a warm pool per template."""
