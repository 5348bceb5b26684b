//! Watch and redeploy: file watching (notify) turned into redeploy actions (arrives with the watch issue).
