"""Reading files of numbers: bounded lines, CSV and JSONL rows, cells safe to write back to CSV."""
