exports.greeting = (path) => `hello from ${path}`;
