export const greet = (x) => `hello ${x}\n`;
